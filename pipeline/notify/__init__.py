"""Outgoing webhooks: payloads, subscriptions, the SSRF guard, signed delivery with retries."""
