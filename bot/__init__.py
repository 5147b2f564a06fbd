"""moim (모임): a Telegram bot for civic groups, cooperatives and citizen networks."""

__version__ = "0.1.0"
