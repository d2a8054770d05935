"""Jinja templates for the code sl2s generates (shipped inside the wheel as `sl2s.templates`)."""
