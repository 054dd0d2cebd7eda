// A small story with every construct the importer maps soundly.
-> station

== station ==
Rain on the platform. # shot: duration=3
The last train is late. 
# shot: continuity=previous
A clock ticks over the ticket office.
* [Wait for the train] -> train
* [Walk into town]
    You leave the station behind.
    -> town
* Buy a ticket[.], and the clerk smiles.
    -> train.boarding

== train ==
The train pulls in, hissing.
-> boarding
= boarding
You find a seat by the window.
-> END

== town ==
The streets are <>
empty and wet.
* [Knock at the inn]
    The innkeeper lets you in.
* [Keep walking]
    You walk until dawn.
- Morning comes at last.
-> END
