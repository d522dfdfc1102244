"""tensorcalc.recipes"""
