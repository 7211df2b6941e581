"""tunelens.serve"""
