import sys

from flatjax.cli import main

sys.exit(main())
