import TandemCollectives
print("tandem-mpi-tests: no scenario yet")
