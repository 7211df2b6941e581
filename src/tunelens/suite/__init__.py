"""tunelens.suite"""
