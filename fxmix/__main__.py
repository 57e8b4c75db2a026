import sys

from fxmix.cli import main

sys.exit(main())
