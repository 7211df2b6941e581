"""tunelens.data"""
