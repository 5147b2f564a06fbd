"""The domain: plain async functions over an AsyncSession. No Telegram here."""
