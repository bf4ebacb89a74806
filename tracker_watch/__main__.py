from tracker_watch.cli import main

raise SystemExit(main())
