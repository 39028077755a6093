from dnspol.cli import main

raise SystemExit(main())
