from sda.cli import main

raise SystemExit(main())
