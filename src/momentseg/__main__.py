from momentseg.cli import main

main()
