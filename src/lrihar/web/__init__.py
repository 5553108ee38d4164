"""What both local web pages share (the review page and ``lrihar run``'s live page): the guard in
front of their apps, their addresses and launch tokens."""
