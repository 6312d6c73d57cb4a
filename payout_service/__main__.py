from payout_service.main import main

main()
