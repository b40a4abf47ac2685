import sys

from r2ta.cli import main

sys.exit(main())
