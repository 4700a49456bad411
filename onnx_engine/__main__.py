from onnx_engine.cli import main

raise SystemExit(main())
