# A workload that fits: prints its arguments and a figure computed on the hosted interpreter.
import sys
d = {str(i): [i] * 3 for i in range(100000)}
print("ok", sys.argv[1:], sum(len(k) for k in d), sys.argv[0].endswith("ok.py"))
