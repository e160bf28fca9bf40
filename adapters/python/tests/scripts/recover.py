# Catches MemoryError, then does more work: status 0 under a budget.
try:
    hog = []
    while True:
        hog.append(str(len(hog)) * 8)
except MemoryError:
    n = len(hog)
    del hog
print("recovered after", n > 1000, sum(len(str(i)) for i in range(100000)))
