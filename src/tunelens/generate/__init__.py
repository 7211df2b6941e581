"""tunelens.generate"""
