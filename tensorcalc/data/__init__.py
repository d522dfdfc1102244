"""tensorcalc.data"""
