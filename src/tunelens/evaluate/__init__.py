"""tunelens.evaluate"""
