"""Reporting: results.json records, JUnit properties, Allure labels and attachments."""
