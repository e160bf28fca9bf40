# Grows without end: under a budget, an uncaught MemoryError (status 1, its traceback printed).
hog = []
while True:
    hog.append(str(len(hog)) * 8)
