import StrataServer
print("strata")
