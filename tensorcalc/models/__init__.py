"""tensorcalc.models"""
