import sys

from hub_upload.cli import main

sys.exit(main())
