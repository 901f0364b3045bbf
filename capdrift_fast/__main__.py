from capdrift_fast.cli import main

main()
