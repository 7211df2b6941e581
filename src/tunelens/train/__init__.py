"""tunelens.train"""
