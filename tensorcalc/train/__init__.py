"""tensorcalc.train"""
