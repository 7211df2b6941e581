"""tunelens.pipeline"""
