from imnet.cli import main

main()
