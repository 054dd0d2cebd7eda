-> start
== start ==
You stand at a door.
-> describe_door ->
<- porch_choices
* [Open the door] -> inside
== describe_door ==
It is painted red.
->->
== porch_choices ==
* [Sit on the porch] -> porch
- -> DONE
== inside ==
A warm hall.
-> ask ->
The end of the hall.
-> END
== ask ==
* [Ask a question] You ask. ->->
* [Stay silent] ->->
== porch ==
The porch creaks.
-> END
