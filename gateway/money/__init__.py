"""The site's money: pricing and billing, the double-entry books, merchants' coupons,
passes and lists, and drivers' payments."""
