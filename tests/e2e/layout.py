"""Who lives where: the test backends' users and domains (shared by fixtures and tests)."""

PASSWORD = "secret"
PROBE_USER = "probe@example.com"
PROBE_PASSWORD = "probe-secret"

# Which users each backend holds (moving@example.com is on mail1 and mail2).
BACKEND_USERS = {
    "mail1": ["alice@example.com", "moving@example.com"],
    "mail2": ["bob@example.org", "moving@example.com"],
    "mail3": ["carol@sub.example.net"],
}
DOMAINS = {"example.com": "mail1", "example.org": "mail2", "*.example.net": "mail3"}
# One ordinary user per domain and where it must land.
HOME_BACKEND = {"alice@example.com": "mail1", "bob@example.org": "mail2",
                "carol@sub.example.net": "mail3"}
