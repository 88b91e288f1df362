from mesos_es.cli import main

raise SystemExit(main())
