"""Who may ask, and how much: API keys, authentication, logins, limits and stream leases."""
