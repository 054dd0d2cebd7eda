-> hub
== hub ==
The square is busy.
+ [Visit the market] -> market
+ [Leave] -> road
== market ==
Bread and fish.
+ [Back to the square] -> hub
== road ==
An empty road.
-> END
