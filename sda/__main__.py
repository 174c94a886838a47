from sda.cli.main import main

raise SystemExit(main())
