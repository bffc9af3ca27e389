import sys

from synthscan.cli import main

sys.exit(main())
