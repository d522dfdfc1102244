"""tensorcalc.nn"""
