import sys

from longllada.cli import main

sys.exit(main())
