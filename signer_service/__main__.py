from signer_service.main import main

raise SystemExit(main())
