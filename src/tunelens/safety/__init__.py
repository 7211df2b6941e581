"""tunelens.safety"""
