"""Prints what python tells a script about itself."""
import sys

print("__file__:", __file__)
print("argv[0]:", sys.argv[0])
print("path[0]:", sys.path[0])
print("__name__:", __name__)
