"""tunelens.cards"""
