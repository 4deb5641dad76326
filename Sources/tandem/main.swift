import TandemTraining
print("tandem")
