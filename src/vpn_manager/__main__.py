from vpn_manager.cli.entry import main

main()
