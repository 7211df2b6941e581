"""tunelens.explain"""
