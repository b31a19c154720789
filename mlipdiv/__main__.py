from mlipdiv.cli import main

raise SystemExit(main())
