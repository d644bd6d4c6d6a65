"""The layouts suite's test module: the hetero checks, then one line naming the profiles of
the slot the case was given (SLOT <case> <main profile> <background profiles>)."""


def test_case(mig_case, hetero, mig_slot):
    outcome = hetero.run(mig_case)
    assert outcome.valid, outcome.why_invalid()
    assert outcome.background_healthy, outcome.why_unhealthy()
    print("SLOT", mig_case.id, mig_slot.main.profile,
          "+".join(p.profile for p in mig_slot.background))
