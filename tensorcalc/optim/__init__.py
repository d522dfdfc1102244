"""tensorcalc.optim"""
