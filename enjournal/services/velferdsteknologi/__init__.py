"""Velferdsteknologi: remote follow-up at home and safety alarms (domain.md section 6)."""
