from corpus_pipeline.cli import main

raise SystemExit(main())
